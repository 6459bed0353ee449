"""Example 2 of the blog post: Xavier init with sigmoid layers.

As published, unseeded. The post says such networks "output NaN"; they do not: every value
stays finite (`nandoctor trace examples/blog_xavier_sigmoid.py` says so, and what it saw).
"""

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_derivative(x):
    return sigmoid(x) * (1 - sigmoid(x))


class Layer:
    def __init__(self, input_size, output_size):
        # Xavier initialization
        variance = 2.0 / (input_size + output_size)
        self.weights = np.random.normal(0, np.sqrt(variance), (input_size, output_size))
        self.biases = np.zeros((1, output_size))

    def forward(self, input_data):
        self.input = input_data
        self.output = sigmoid(np.dot(input_data, self.weights) + self.biases)
        return self.output

    def backward(self, output_gradient, learning_rate):
        sigmoid_grad = sigmoid_derivative(np.dot(self.input, self.weights) + self.biases)
        weight_gradient = np.dot(self.input.T, output_gradient * sigmoid_grad)
        bias_gradient = np.sum(output_gradient * sigmoid_grad, axis=0, keepdims=True)

        self.weights -= learning_rate * weight_gradient
        self.biases -= learning_rate * bias_gradient
        input_gradient = np.dot(output_gradient * sigmoid_grad, self.weights.T)
        return input_gradient


# Initialize the network
input_size = 10
hidden_size = 20
output_size = 5
learning_rate = 0.1

layer1 = Layer(input_size, hidden_size)
layer2 = Layer(hidden_size, output_size)

# Prepare dummy input data
input_data = np.random.randn(1, input_size)

# Forward and backward passes for a few steps
for _ in range(10):
    output = layer2.forward(layer1.forward(input_data))

    # Compute a dummy output gradient (not accurate for learning but illustrates the issue)
    output_gradient = np.random.randn(1, output_size)

    # Back propagation
    grad_layer2 = layer2.backward(output_gradient, learning_rate)
    layer1.backward(grad_layer2, learning_rate)

    if np.isnan(output).any():
        print("NaN detected")
        break
print("Output:", output)
